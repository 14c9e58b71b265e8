"""expmae.report.tables: the submission's columns follow the config."""


def test_submission_columns_follow_the_config():
    from expmae.report.tables import select_columns

    text = "name,discrete,valence\na,happy,0.5\n"
    assert select_columns(text, ["name", "discrete"]) == "name,discrete\na,happy\n"
    assert select_columns(text, ["name", "discrete", "valence"]) == text
