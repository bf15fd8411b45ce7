# Standard errors of a mixture of linear-Gaussian experts in flexmix, the
# reference for benchmarks/flexmix_refit.py.
#
#   Rscript flexmix_refit.R DATA.csv EXPERT_TERMS GATE_TERMS FAMILY
#
# DATA.csv has the input columns, y, and h1..hK: skmoe's responsibilities,
# given to flexmix as its start (cluster=), so that both fits reach the same
# optimum with the same expert labels. EXPERT_TERMS and GATE_TERMS are the
# columns each sees, comma-separated; FAMILY is gaussian or poisson. The model
# is flexmix(y ~ <expert terms>, model = FLXMRglm(family = FAMILY), concomitant =
# FLXPmultinom(~ <gate terms>)), run to a tolerance of 1e-12; refit() gives
# the standard errors (from the Hessian of the log-likelihood, by optim).
#
# Prints LOGLIK value, then one line per coefficient:
#   COEF part term estimate std_error

suppressPackageStartupMessages(library(flexmix))

args <- commandArgs(trailingOnly = TRUE)
d <- read.csv(args[1])
expert_terms <- strsplit(args[2], ",")[[1]]
gate_terms <- strsplit(args[3], ",")[[1]]
family <- args[4]
hs <- grep("^h[0-9]+$", names(d), value = TRUE)
expert <- as.formula(paste("y ~", paste(expert_terms, collapse = " + ")))
gate <- as.formula(paste("~", paste(gate_terms, collapse = " + ")))
fit <- flexmix(expert, data = d, k = length(hs), cluster = as.matrix(d[, hs]),
               model = FLXMRglm(family = family), concomitant = FLXPmultinom(gate),
               control = list(tolerance = 1e-12, iter.max = 5000))
cat(sprintf("LOGLIK %.8f\n", as.numeric(logLik(fit))))
rf <- refit(fit)
emit <- function(part, m) {
  for (t in rownames(m)) {
    cat(sprintf("COEF %s %s %.10g %.10g\n", part, t, m[t, 1], m[t, 2]))
  }
}
comps <- rf@components[[1]]
for (k in seq_along(comps)) emit(sprintf("expert%d", k - 1), comps[[k]])
conc <- rf@concomitant
for (name in names(conc)) {
  k <- as.integer(sub("Comp.", "", name, fixed = TRUE))
  emit(sprintf("gate:expert%d", k - 1), conc[[name]])
}
