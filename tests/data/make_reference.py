"""Write a RepDistiller network's reference fixture for tests/test_convert_teacher.py.

    python tests/data/make_reference.py <RepDistiller checkout> resnet8 \\
        tests/data/resnet8_reference.npz

Needs torch. Builds `model_dict[name](num_classes=100)` from the checkout's
`models/` (HobbitLong/RepDistiller b84f547c5db6a35318d4671d7d5c4de74c822403
for the committed file), gives its batch norms running statistics (three
training-mode passes over random batches) and random affine weights, and
saves its `state_dict` (`state_dict/<key>`), two fixed images (`images`,
NHWC) and, in eval mode, its logits, pooled feature and pre-activation stage
features `f1_pre` ... (`feat_noact0` ..., NHWC).
"""

import sys

import numpy as np
import torch


def main(checkout, name, path):
    sys.path.insert(0, checkout)
    from models import model_dict
    torch.manual_seed(0)
    model = model_dict[name](num_classes=100)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(8, 3, 32, 32))
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0, 0.1)
    model.eval()
    images = np.random.RandomState(0).randn(2, 32, 32, 3).astype("float32")
    with torch.no_grad():
        feats, logits = model(torch.from_numpy(images.transpose(0, 3, 1, 2)),
                              is_feat=True, preact=True)
    arrays = {f"state_dict/{k}": v.numpy() for k, v in model.state_dict().items()}
    arrays.update(images=images, logits=logits.numpy(), pool=feats[-1].numpy())
    for i, feature in enumerate(feats[1:-1]):
        arrays[f"feat_noact{i}"] = feature.numpy().transpose(0, 2, 3, 1)
    np.savez_compressed(path, **arrays)


if __name__ == "__main__":
    main(*sys.argv[1:])
