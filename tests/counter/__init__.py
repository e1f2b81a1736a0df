"""A counter aggregate added the documented way (README, "Adding an aggregate"): proof of the seams."""
