"""Population analytics inside records' trust boundary (docs/architecture.md §16).

A de-identified, encrypted Parquet store kept current from the vault
(``store.py``), a declarative cohort query compiled to one SQL text
(``query.py``) run by DuckDB or Spark (``engines.py``), statistical disclosure
control on every answer (``sdc.py``), and the policy-decided, audited use case
(``service.py``) behind ``POST /analytics/query`` (``api.py``). Only records
imports it: the store's keys are records' own.
"""
