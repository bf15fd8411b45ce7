# Fit a mixture of linear-Gaussian experts with a multinomial gate in flexmix,
# the reference for benchmarks/bench_em.py.
#
#   Rscript flexmix_fit.R DATA.csv K NREP SEED
#
# DATA.csv has columns x1..xd and y. Each repetition is one flexmix() call
# from its own random initialisation (flexmix's default: random hard
# assignments), timed inside R with system.time (reading the CSV is not
# timed). Control is flexmix's default: iter.max = 200, minprior = 0.05,
# tolerance = 1e-6 on the relative change of the log-likelihood.
#
# The model is flexmix(y ~ ., k = K, concomitant = FLXPmultinom(~ .)) on the
# inputs: the gate's formula is written out as ~ x1 + ... + xd because in
# FLXPmultinom(~ .) the dot expands over every column of the data, y
# included (checked: its model matrix is (Intercept), x1, ..., xd, y), which
# is another model (a gate that sees the target), not skmoe's.
#
# Prints one line per repetition and one line for the best:
#   REP r seconds=... cpu=... loglik=... iter=... k=... converged=...
#   BEST r loglik=...

suppressPackageStartupMessages(library(flexmix))

args <- commandArgs(trailingOnly = TRUE)
if (length(args) < 4) {
  stop("usage: Rscript flexmix_fit.R DATA.csv K NREP SEED")
}
path <- args[1]
K <- as.integer(args[2])
nrep <- as.integer(args[3])
seed <- as.integer(args[4])

d <- read.csv(path)
xs <- setdiff(names(d), "y")
gate <- as.formula(paste("~", paste(xs, collapse = " + ")))

cat(sprintf("INFO flexmix=%s R=%s n=%d d=%d\n",
            as.character(packageVersion("flexmix")),
            paste(R.version$major, R.version$minor, sep = "."),
            nrow(d), length(xs)))

best <- -Inf
best_rep <- NA
for (r in seq_len(nrep)) {
  set.seed(seed + r)
  fit <- NULL
  err <- NULL
  t <- system.time(
    fit <- tryCatch(
      flexmix(y ~ ., data = d, k = K, model = FLXMRglm(),
              concomitant = FLXPmultinom(gate)),
      error = function(e) {
        err <<- conditionMessage(e)
        NULL
      }
    )
  )
  if (is.null(fit)) {
    cat(sprintf("REP %d seconds=%.4f error=%s\n", r, t[["elapsed"]],
                gsub("[[:space:]]+", "_", err)))
    next
  }
  ll <- as.numeric(logLik(fit))
  cat(sprintf("REP %d seconds=%.4f cpu=%.4f loglik=%.6f iter=%d k=%d converged=%s\n",
              r, t[["elapsed"]], t[["user.self"]] + t[["sys.self"]], ll,
              fit@iter, fit@k, as.character(fit@converged)))
  if (ll > best) {
    best <- ll
    best_rep <- r
  }
}
cat(sprintf("BEST %s loglik=%.6f\n", as.character(best_rep), best))
