"""Curriculum learning: score training images easy to hard, pace how many are in use, and sample
mini-batches from that easiest-first prefix (a torch Sampler for any DataLoader)."""
