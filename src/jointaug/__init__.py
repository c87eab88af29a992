"""jointaug: joint view augmentations (JointCrop, JointBlur, JointColor) for contrastive learning."""

__version__ = "0.1.0"
