"""Reproduction experiments: the paper's tables and the leave-one-method-out study.

Where each concept lives (scripts/reproduce.py and scripts/leave_one_method_out.py are thin CLIs
over these):

* ``runs``         -- what to train (``RunSpec``, ``Options``), its config, train/reuse/resume.
* ``preflight``    -- fail before hours of training: missing datasets or ImageNet weights.
* ``cached_eval``  -- evaluations of trained runs, cached next to each run; dataset roles.
* ``stats``        -- mean +- sample std over seeds, bootstrap AUC intervals (videos resampled).
* ``table_writer`` -- the one Markdown + CSV table writer.
* ``tables``       -- Tables I-V: which run/metric fills each cell, computed over seeds, written.
* ``cost``         -- Table VI: parameters, FLOPs, latency and throughput, measured here.
* ``paper_tables`` -- the paper's figures as printed (shown beside ours, never instead).
* ``reproduce``    -- ``reproduce(n, opts)``: one table end to end, and its CLI.
* ``lomo``         -- leave-one-method-out on a face folder, and its CLI.
"""
