"""Training stages: per-feature-set classifiers and fusion heads with k-fold CV (cv), late fusion (late),
pseudo-label selection (pseudo); data.py assembles the inputs, heads.py the models, scoring.py the MER
scores and outputs, plan.py what each round trains (parse-time, light). Import the modules themselves."""
