"""Blinded reader studies, without any UI: a study declares its cases and the variants a tab can
produce for each case; each reader sees the cases in their own random order with the variants under
shuffled letters; ratings go to SQLite (or any SQLAlchemy database); results are exported as CSV
and in the iMRMC input format and summarised with bootstrap confidence intervals.

`design` (what a study is, blinding), `store` (the database), `cases` (variant images computed once
per case, bounded), `analysis` (exports, summary, plot), `ct` (the CT tab's variants). The tab in
`tabs/study.py` only lays these out.
"""
