"""Figures and the HTML run report: the last stage of the pipeline, reading what the others wrote.

:mod:`~photofeh.report.style` owns the plotting style; :mod:`~photofeh.report.map_figures` draws the maps,
:mod:`~photofeh.report.eval_figures` the evaluation, :mod:`~photofeh.report.html` assembles the page.
"""
