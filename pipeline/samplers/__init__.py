"""Samplers: plain loops, one file per algorithm (EDM Euler, DPM++ 2M SDE, flow matching)."""
