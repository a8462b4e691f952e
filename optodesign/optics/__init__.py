"""Wave optics as pure functions: free-space propagation and thin elements."""

from .propagation import (
    SamplingError,
    SamplingReport,
    SamplingWarning,
    check_sampling,
    clear_transfer_cache,
    propagate,
    transfer_function,
)

__all__ = [
    "SamplingError",
    "SamplingReport",
    "SamplingWarning",
    "check_sampling",
    "clear_transfer_cache",
    "propagate",
    "transfer_function",
]
