"""Billing data: every cloud's export or API answer, read into one normalized shape.

- schema.py: the normalized columns (a subset of FOCUS 1.2, plus x_ columns of ours)
  and the `Format` seam: each billing format says whether it recognizes a file's
  columns and gives the DuckDB SQL that maps its rows to the normalized columns.
- focus.py (FOCUS 1.0-1.3 from AWS, Azure, GCP), aws.py (CUR 2.0, legacy CUR),
  azure.py (cost details exports, actual and amortized), gcp.py (BigQuery billing
  export rows, standard and detailed): the formats.
- detect.py: which format a file is, from its columns.
- synthetic.py: realistic synthetic spend, written in every format, for the tests,
  the benchmark and `recipe cost sample`.

DuckDB does the reading (projection and filter pushdown into Parquet and CSV); no
billing row passes through a Python loop.
"""
