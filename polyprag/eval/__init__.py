"""Measuring: metrics, evaluation of answering modes, bench (the PRAG family side by side), speed."""
