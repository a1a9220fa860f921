"""The trained folder from Python: diffsight's sampler API, and the same UNet in stock diffusers."""

import torch
from diffusers import UNet2DModel

from diffsight.models import load_model
from diffsight.sampling.generate import generate_samples

model = load_model("runs/my_images/model")
print(model.kind, model.event_shape, model.class_names)  # edm (3, 16, 16) ('circles', 'squares')

labels = torch.tensor([model.class_names.index("squares")] * 8)
images = generate_samples(
    model.denoiser,
    model.event_shape,
    8,
    steps=20,
    sampler="dpmpp_2m",
    generator=torch.Generator().manual_seed(0),
    labels=labels,
)
print(images.shape, float(images.min()), float(images.max()))  # (8, 3, 16, 16), values in about [-1, 1]

unet = UNet2DModel.from_pretrained("runs/my_images/model/unet")  # the raw network, loadable by diffusers
print(type(unet).__name__, sum(p.numel() for p in unet.parameters()), "parameters")
