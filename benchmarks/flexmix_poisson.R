# Fit a mixture of Poisson regressions with a multinomial gate in flexmix,
# the reference for benchmarks/flexmix_poisson.py.
#
#   Rscript flexmix_poisson.R DATA.csv K NREP SEED
#
# DATA.csv has the input columns, y (counts), and h1..hK: skmoe's
# responsibilities. The model is
#   flexmix(y ~ <inputs>, k = K, model = FLXMRglm(family = "poisson"),
#           concomitant = FLXPmultinom(~ <inputs>))
# with the gate's formula written out (FLXPmultinom(~ .) would also take y,
# see flexmix_fit.R): the gate depends on x as skmoe's does (flexmix's
# default concomitant is constant weights). It runs NREP times from
# flexmix's random starts (random hard assignments), seeds SEED + r, and
# once from skmoe's responsibilities (cluster =), which should reach skmoe's
# optimum with its expert labels. Control: tolerance 1e-10 on the relative
# change of the log-likelihood, iter.max 2000, flexmix's minprior 0.05
# (a component below it is removed: k then falls).
#
# Prints one line per random start, the best, the start from skmoe and its
# coefficients:
#   REP r seconds=... loglik=... iter=... k=... converged=...
#   BEST r loglik=...
#   FROMSKMOE seconds=... loglik=... iter=... k=...
#   COEF part term estimate      (part: expert0.., gate:expert1..)

suppressPackageStartupMessages(library(flexmix))

args <- commandArgs(trailingOnly = TRUE)
if (length(args) < 4) {
  stop("usage: Rscript flexmix_poisson.R DATA.csv K NREP SEED")
}
d <- read.csv(args[1])
K <- as.integer(args[2])
nrep <- as.integer(args[3])
seed <- as.integer(args[4])

hs <- grep("^h[0-9]+$", names(d), value = TRUE)
xs <- setdiff(names(d), c("y", hs))
expert <- as.formula(paste("y ~", paste(xs, collapse = " + ")))
gate <- as.formula(paste("~", paste(xs, collapse = " + ")))
control <- list(tolerance = 1e-10, iter.max = 2000)

cat(sprintf("INFO flexmix=%s R=%s n=%d d=%d\n",
            as.character(packageVersion("flexmix")),
            paste(R.version$major, R.version$minor, sep = "."),
            nrow(d), length(xs)))

fit_once <- function(...) {
  err <- NULL
  fit <- NULL
  t <- system.time(
    fit <- tryCatch(
      flexmix(expert, data = d, model = FLXMRglm(family = "poisson"),
              concomitant = FLXPmultinom(gate), control = control, ...),
      error = function(e) {
        err <<- conditionMessage(e)
        NULL
      }
    )
  )
  list(fit = fit, seconds = t[["elapsed"]], error = err)
}

best <- -Inf
best_rep <- NA
for (r in seq_len(nrep)) {
  set.seed(seed + r)
  run <- fit_once(k = K)
  if (is.null(run$fit)) {
    cat(sprintf("REP %d seconds=%.4f error=%s\n", r, run$seconds,
                gsub("[[:space:]]+", "_", run$error)))
    next
  }
  fit <- run$fit
  ll <- as.numeric(logLik(fit))
  cat(sprintf("REP %d seconds=%.4f loglik=%.6f iter=%d k=%d converged=%s\n",
              r, run$seconds, ll, fit@iter, fit@k, as.character(fit@converged)))
  if (ll > best) {
    best <- ll
    best_rep <- r
  }
}
cat(sprintf("BEST %s loglik=%.6f\n", as.character(best_rep), best))

if (length(hs) == K) {
  run <- fit_once(cluster = as.matrix(d[, hs]))
  fit <- run$fit
  cat(sprintf("FROMSKMOE seconds=%.4f loglik=%.6f iter=%d k=%d\n",
              run$seconds, as.numeric(logLik(fit)), fit@iter, fit@k))
  p <- parameters(fit)
  for (k in seq_len(ncol(p))) {
    for (t in rownames(p)) {
      cat(sprintf("COEF expert%d %s %.10g\n", k - 1,
                  sub("^coef\\.", "", t), p[t, k]))
    }
  }
  g <- fit@concomitant@coef
  for (k in seq_len(ncol(g))[-1]) {
    for (t in rownames(g)) {
      cat(sprintf("COEF gate:expert%d %s %.10g\n", k - 1, t, g[t, k]))
    }
  }
}
