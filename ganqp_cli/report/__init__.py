"""`ganqp report`: a run or a sweep as one self-contained HTML page (runs, the table shared
with scripts/fid_table.py, SVG figures, the HTML page, the command)."""
