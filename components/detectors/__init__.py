"""Task-change detectors (role ``detector``): they watch a statistic of the run and ask the
runner for a task change (:meth:`l2rl.core.RunContext.request_task_change`) when it shifts,
so components that consolidate at task ends work in task-agnostic runs."""
