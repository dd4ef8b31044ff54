"""`tf.train.MomentumOptimizer(lr, 0.9, use_nesterov=True)` in Keras 3.

TF1 accumulates raw gradients and scales the step by the current learning
rate: `a <- m*a + g; w <- w - lr*(g + m*a)`. Keras' `SGD` folds the learning
rate into its velocity, which differs from TF1 right after each learning-rate
decay, so the TF1 rule is kept here. With `use_nesterov=False` it is
PyTorch's `optim.SGD(momentum=m)` (dampening 0: `b <- m*b + g; w <- w - lr*b`),
the optimizer of the reference schedule (`tf_kd.schedules`).
"""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="tf_kd")
class Momentum(keras.optimizers.Optimizer):
    """TF1 momentum optimizer (Nesterov by default)."""

    def __init__(self, learning_rate=0.1, momentum=0.9, use_nesterov=True,
                 name="Momentum", **kwargs):
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        self.momentum = momentum
        self.use_nesterov = use_nesterov

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self.accumulators = self.add_optimizer_variables(variables, "momentum")

    def update_step(self, gradient, variable, learning_rate):
        learning_rate = ops.cast(learning_rate, variable.dtype)
        gradient = ops.cast(gradient, variable.dtype)
        momentum = ops.cast(self.momentum, variable.dtype)
        accumulator = self.accumulators[self._get_variable_index(variable)]
        self.assign(accumulator, ops.add(ops.multiply(accumulator, momentum), gradient))
        step = accumulator
        if self.use_nesterov:
            step = ops.add(gradient, ops.multiply(accumulator, momentum))
        self.assign_sub(variable, ops.multiply(step, learning_rate))

    def get_config(self):
        config = super().get_config()
        config.update({"momentum": self.momentum, "use_nesterov": self.use_nesterov})
        return config
