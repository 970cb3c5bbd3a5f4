"""Subcommands of coupon-chaos, one module each."""
