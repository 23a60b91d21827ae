"""Reports of a sweep: the verdict's fixed rules (`.verdict`), the table and summary built from
the records (`.build`), and the plots (`.plots`, imported only when they are drawn).
"""
