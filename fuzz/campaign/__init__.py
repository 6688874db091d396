"""Campaigns: the parent process, its workers, progress display and the
records they share."""
