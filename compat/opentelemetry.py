"""OpenTelemetry SDK internals (tests/test_compat.py checks each)."""

from opentelemetry.sdk.trace import sampling


def root_sampler(sampler: sampling.Sampler) -> sampling.Sampler:
    """What decides a trace without a parent: a parent-based sampler's root sampler, which
    the SDK keeps as `_root` and does not publish (the sampler itself for any other)."""
    root = getattr(sampler, "_root", None) if isinstance(sampler, sampling.ParentBased) else sampler
    return root if isinstance(root, sampling.Sampler) else sampler
