"""From the inbox to a backend: the dispatcher, routing of events, lifecycle timers, operator changes."""
