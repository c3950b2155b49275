"""driftkeel: keep RLHF-trained language models aligned while their data drifts."""

__version__ = "0.1.0"
