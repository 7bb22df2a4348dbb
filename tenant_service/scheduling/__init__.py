"""The storage scheduler: flex-model parsing, the linear program, and its jobs."""
