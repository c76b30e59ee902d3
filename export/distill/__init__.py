"""`edgespec distill`: a feature-level (EAGLE-style) draft head for a bundle's target, trained by
self-distillation and added to the bundle as models.eagle (docs/bundle-format.md).

seeds / seed_data: the prompts; teacher: the torch model and its checks; data: answers and
features as resumable shards, the draft vocabulary; head: the head in torch; train: the loss and
the training loop; main: the command.
"""
