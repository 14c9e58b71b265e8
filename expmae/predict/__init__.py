"""Use the trained recogniser: predict new videos without retraining (issue #17).

- bundle.py: results/bundle/, the portable model bundle (rule `bundle`), and its manifest check.
- model.py: a trained model folder (expmae.train.cv / late) applied to feature tables, as its training job
  predicted the test split.
- table.py: the prediction CSV's columns, and the workflow's `predict` rule (data.predict videos).
- run.py: standalone prediction from a bundle (faces + extractors in-process), the CLI's work.

    python -m expmae.predict --bundle results/bundle VIDEO_OR_FOLDER... [--out predictions.csv]
"""
