"""``python -m trainer.monitor`` prints the metric table (the content of METRICS.md)."""

from trainer.monitor.keys import render_metrics_markdown

print(render_metrics_markdown(), end="")
