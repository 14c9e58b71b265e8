"""Training stages: per-feature-set classifiers and fusion heads with k-fold CV, once per seed (cv; one
fold's training in fit), late fusion (late), pseudo-label selection (pseudo); data.py assembles the
inputs, heads.py the models, scoring.py the MER scores (mean +- std over seeds) and outputs, stats.py the
bootstrap intervals and paired comparisons, plan.py what each round trains (parse-time, light).
Import the modules themselves."""
