# Fit a mixture of linear-Gaussian experts with a logistic gate in mixtools
# (hmeEM, one level), the reference for benchmarks/bench_starts.py.
#
#   Rscript mixtools_hme.R DATA.csv K NREP SEED
#
# DATA.csv has the input columns and y; experts and gate see every input
# (with an intercept). Each repetition is one hmeEM() call from its own
# random parameters (mixtools' default start), epsilon 1e-8, maxit 10000.
#
# Prints one line per repetition and the best:
#   REP r loglik=...
#   BEST loglik=...

suppressPackageStartupMessages(library(mixtools))

args <- commandArgs(trailingOnly = TRUE)
d <- read.csv(args[1])
K <- as.integer(args[2])
nrep <- as.integer(args[3])
seed <- as.integer(args[4])
x <- as.matrix(d[, setdiff(names(d), "y"), drop = FALSE])
best <- -Inf
for (r in seq_len(nrep)) {
  set.seed(seed + r)
  fit <- tryCatch(
    hmeEM(d$y, x, k = K, epsilon = 1e-8, maxit = 10000, verb = FALSE),
    error = function(e) NULL
  )
  if (is.null(fit)) {
    cat(sprintf("REP %d error\n", r))
    next
  }
  cat(sprintf("REP %d loglik=%.6f\n", r, fit$loglik))
  best <- max(best, fit$loglik)
}
cat(sprintf("BEST loglik=%.6f\n", best))
