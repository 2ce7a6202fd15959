"""Training: the Lightning module and trainer, controlled continuation, growth schedules."""
