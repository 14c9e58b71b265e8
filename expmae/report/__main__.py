"""`python -m expmae.report ...`: see expmae/report/__init__.py."""
from expmae.report import main

main()
