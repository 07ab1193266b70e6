"""One-Shot Growth (OSG): Firefly-style candidate neurons, first-order scores, global selection under a budget."""

from gear_trt.grow.budget import Budget, parse_budget
from gear_trt.grow.osg import GrowthConfig, GrowthResult, grow

__all__ = ["Budget", "parse_budget", "GrowthConfig", "GrowthResult", "grow"]
