"""The receiver's commands (``serve``, ``work-items``, ``cmdb``, ``trace``, ``replay``, ``discard``)."""
