"""Sampling: joint laws and view policies that draw ViewParams (never pixels)."""

from .couplings import Coupling, FixedRatio, Independent, RatioLaw, Same, UserJoint
from .laws import IndependentUniformLaw, JCLaw, make_law
from .params import ViewParams, identity_params
from .policy import ViewPolicy, ViewSpec
from .recipes import blur_policy, crop_policy, make_policy, recipe_names

__all__ = [
    "Coupling", "FixedRatio", "Independent", "RatioLaw", "Same", "UserJoint", "IndependentUniformLaw", "JCLaw",
    "make_law",
    "ViewParams", "identity_params", "ViewPolicy", "ViewSpec", "blur_policy", "crop_policy", "make_policy",
    "recipe_names",
]
