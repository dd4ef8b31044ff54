"""What the `keras.distillation` losses read and how they are saved.

`keras.distillation.Distiller` hands each loss the output of one teacher
layer and one student layer, `teacher_layer_name` / `student_layer_name`
(the final outputs when they are None), taken from one forward pass of each
model through feature extractors it builds from those names. Three bases:

- `LayerLoss`: one layer of each model, exactly as Keras' own
  `FeatureDistillation`. A method that sums a term over stages (FitNet, AT,
  AB, VID, NST) is one loss per stage in the distiller's list.
- `TrainableLayerLoss`: the same with trainable modules (FitNet's hint map,
  AB's connector, VID's regressor). It is also a `keras.layers.Layer`, so the
  distiller tracks it like any sub-layer: its weights are in the distiller's
  `trainable_variables`, the optimizer updates them with the student's, and
  `.keras` files save and restore them. They are built, from the two layers'
  shapes, when the distiller checks the loss against its models.
- `MultiLayerLoss`: several layers of each model in one term (FSP and
  KD-SVD/KD-EID relate consecutive stages). The distiller passes one layer
  per model, so such a loss names each model's input layer: it receives the
  batch and runs its own extractor of the named layers (one more forward
  pass of each model per step; the student's in training mode, as the
  distiller's own student extractor).
"""

import keras


def _layer_output(model, name, role):
    """The symbolic output of `model`'s layer `name` (its output if None;
    None for a subclassed model's output, unknown before it is called)."""
    if name is None:
        outputs = getattr(model, "outputs", None)
        if outputs is None:
            return None
        if len(outputs) != 1:
            raise ValueError(f"The {role} has {len(outputs)} outputs; name the layer to read.")
        return outputs[0]
    try:
        return model.get_layer(name).output
    except (ValueError, AttributeError) as error:
        raise ValueError(f"In the {role} model: {error}") from error


def _require_functional(model, role, loss):
    if getattr(model, "inputs", None) is None:
        raise ValueError(f"{type(loss).__name__} reads named layers and needs a functional "
                         f"model; the {role} has no symbolic inputs (subclassed model).")


def same_spatial_size(teacher_shape, student_shape, loss):
    """Raise unless the two features `[B, H, W, C]` have the same `H, W`."""
    if len(teacher_shape) != 4 or len(student_shape) != 4:
        raise ValueError(f"{type(loss).__name__} reads 4-D feature maps [B, H, W, C]; got "
                         f"teacher {tuple(teacher_shape)}, student {tuple(student_shape)}.")
    if tuple(teacher_shape[1:3]) != tuple(student_shape[1:3]):
        raise ValueError(f"{type(loss).__name__} needs features of the same spatial size; got "
                         f"teacher {tuple(teacher_shape)}, student {tuple(student_shape)}.")


class LayerLoss(keras.distillation.DistillationLoss):
    """A loss between one layer's output of each model (the final outputs
    when both names are None). Subclasses define `compute_loss(teacher,
    student)` and may check the shapes in `check_shapes`."""

    def __init__(self, teacher_layer_name=None, student_layer_name=None):
        if (teacher_layer_name is None) != (student_layer_name is None):
            raise ValueError("Name a layer of both models, or of neither (final outputs).")
        self.teacher_layer_name = teacher_layer_name
        self.student_layer_name = student_layer_name

    def layer_shapes(self, teacher, student):
        """The shapes of the two features this loss reads (None when the
        final outputs of subclassed models are read)."""
        if self.teacher_layer_name is not None:
            _require_functional(teacher, "teacher", self)
            _require_functional(student, "student", self)
        outputs = (_layer_output(teacher, self.teacher_layer_name, "teacher"),
                   _layer_output(student, self.student_layer_name, "student"))
        if any(output is None for output in outputs):
            return None
        return tuple(tuple(output.shape) for output in outputs)

    def validate_model_compatibility(self, teacher, student):
        shapes = self.layer_shapes(teacher, student)
        if shapes is not None:
            self.check_shapes(*shapes)

    def check_shapes(self, teacher_shape, student_shape):
        """Raise `ValueError` if the loss cannot relate features of these shapes."""

    def get_config(self):
        return {"teacher_layer_name": self.teacher_layer_name,
                "student_layer_name": self.student_layer_name}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


class TrainableLayerLoss(LayerLoss, keras.layers.Layer):
    """A `LayerLoss` with trainable modules, created in `build(teacher_shape,
    student_shape)` when the distiller validates it (or, on loading, from
    the saved shapes)."""

    def __init__(self, teacher_layer_name, student_layer_name, name=None):
        keras.layers.Layer.__init__(self, name=name)
        LayerLoss.__init__(self, teacher_layer_name, student_layer_name)

    def validate_model_compatibility(self, teacher, student):
        shapes = self.layer_shapes(teacher, student)
        if shapes is None:
            raise ValueError(f"{type(self).__name__} builds its modules from the shapes of "
                             "named layers of functional models.")
        self.check_shapes(*shapes)
        if not self.built:
            self.build(*shapes)

    def build(self, teacher_shape, student_shape):
        raise NotImplementedError

    def get_config(self):
        return {**LayerLoss.get_config(self), "name": self.name}


class MultiLayerLoss(keras.distillation.DistillationLoss):
    """A loss between several layers of each model, `teacher_layer_names[i]`
    paired with `student_layer_names[i]`. Subclasses define
    `feature_loss(student_feats, teacher_feats)` (the order of
    `tf_kd.losses`)."""

    min_layers = 2

    def __init__(self, teacher_layer_names, student_layer_names):
        teacher_layer_names = list(teacher_layer_names)
        student_layer_names = list(student_layer_names)
        if len(teacher_layer_names) != len(student_layer_names):
            raise ValueError(f"{type(self).__name__}: as many teacher layers as student layers, "
                             f"got {teacher_layer_names} and {student_layer_names}.")
        if len(teacher_layer_names) < self.min_layers:
            raise ValueError(f"{type(self).__name__} relates consecutive layers: name at least "
                             f"{self.min_layers} of each model.")
        self.teacher_layer_names = teacher_layer_names
        self.student_layer_names = student_layer_names
        # set to the models' input layers by `validate_model_compatibility`
        self.teacher_layer_name = self.student_layer_name = None

    def validate_model_compatibility(self, teacher, student):
        models = getattr(self, "_models", None)
        if models is not None and (models[0] is not teacher or models[1] is not student):
            raise ValueError(f"This {type(self).__name__} reads the models of another "
                             "distiller; give each distiller its own instance.")
        self._models = teacher, student
        self._teacher_features, self.teacher_layer_name = self._extractor(
            teacher, self.teacher_layer_names, "teacher")
        self._student_features, self.student_layer_name = self._extractor(
            student, self.student_layer_names, "student")
        self.check_shapes([tuple(f.shape) for f in self._teacher_features.outputs],
                          [tuple(f.shape) for f in self._student_features.outputs])

    def _extractor(self, model, names, role):
        """A model from `model`'s input to the named layers, and the name of
        its input layer."""
        _require_functional(model, role, self)
        if len(model.inputs) != 1:
            raise ValueError(f"{type(self).__name__} needs a single-input {role} model.")
        inputs = [layer for layer in model.layers
                  if isinstance(layer, keras.layers.InputLayer)]
        if len(inputs) != 1:
            raise ValueError(f"{type(self).__name__} needs a functional {role} model "
                             "(a Sequential one: keras.Model(model.inputs, model.outputs)).")
        outputs = [_layer_output(model, name, role) for name in names]
        return keras.Model(model.inputs[0], outputs), inputs[0].name

    def check_shapes(self, teacher_shapes, student_shapes):
        """Raise `ValueError` if the loss cannot relate features of these shapes."""

    def compute_loss(self, teacher_outputs, student_outputs, **kwargs):
        # both are the batch (the models' input layers)
        teacher = self._teacher_features(teacher_outputs, training=False)
        student = self._student_features(student_outputs, training=True)
        return self.feature_loss(list(student), list(teacher))

    def get_config(self):
        return {"teacher_layer_names": self.teacher_layer_names,
                "student_layer_names": self.student_layer_names}

    @classmethod
    def from_config(cls, config):
        return cls(**config)
