"""Experiments on top of training and evaluation: grids of cells (``jointaug grid``) and run reports
(``jointaug report``). This room sits above train, eval and analysis; nothing below imports it except
the main job's lazy call that writes its report."""
