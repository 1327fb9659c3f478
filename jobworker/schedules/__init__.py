"""Periodic jobs: schedules, their slots, and the leaderless scheduler.

:class:`Cron` says how slots fall across DST changes, and :class:`Scheduler`
how exactly one job per slot is made.
"""

from ._cron import Cron, Every
from ._scheduler import CatchUp, Schedule, Scheduler, schedules_from_config

__all__ = ["CatchUp", "Cron", "Every", "Schedule", "Scheduler", "schedules_from_config"]
