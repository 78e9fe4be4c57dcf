"""Alerts as Azure Monitor sends them: the common schema's models, summaries, and the events backends get."""
