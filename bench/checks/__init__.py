"""Checks of the harness itself: the self-check, the CUDA check, the training loop's speed."""
