"""A 2-D demo of semi-supervised learning with a GAN that runs on the CPU in seconds: ``python -m ssgan.toy``.

What it shows. Three labeled points per class and two thousand unlabeled ones, in the plane: two
interlocking moons (``--problem moons``) or five curled arms (``--problem pinwheel``). A classifier that
sees only the labeled points draws a smooth boundary between them, and that boundary cuts through the
moons' tips or across the arms. The same classifier trained as the discriminator of a semi-supervised GAN
(Salimans et al. 2016, "Improved Techniques for Training GANs", section 5) also sees the unlabeled points
and the generator's samples, and puts its boundaries in the empty gaps between the classes. The picture
(``--out``, and ``--gif`` for the whole training) shows both classifiers' decision regions side by side,
with the generator's samples on the second panel.

Why it works. The discriminator has K class logits l_1 .. l_K and says "real" with probability
sigmoid(logsumexp_k l_k). It is asked to call the unlabeled points real and the generator's samples fake.
A generator trained by feature matching does not learn to reproduce the data; its samples spread over
the region around the data, and the samples that land in the low-density gaps between the classes are
the ones the discriminator can call fake without contradicting any data. To call them fake it must make
every class logit low there, so the units that carve out where the data are, and the class boundaries
built from the same units, end up running through the gaps rather than through the classes. This is
the argument of Dai, Yang, Yang, Cohen and Salakhutdinov 2017, "Good Semi-supervised Learning that
Requires a Bad GAN": a generator that fills the space around the data (a "bad", complement generator)
helps the classifier more than one that reproduces the data would; the demo's generator is such a bad
one, as the crosses on the picture show. A second push comes from the unlabeled points themselves: at a
given mean of the class logits, - log D(x) is smaller when one logit stands out than when they are level,
so calling an unlabeled point real also moves the predictions there away from a tie, and the boundary
away from the data.

How it maps onto the image model. The losses are the ones in ``ssgan/losses.py``, unchanged:

* the discriminator's loss is ``improved_discriminator_loss`` (Improved-GAN's own): the cross-entropy of
  ``supervised_loss`` on the labeled points plus the two binary cross-entropies on
  ``real_fake_logit`` = logsumexp of the class logits, real for the unlabeled batch, fake for the
  generator's, here with ``unlabeled_weight`` 10 (see ``training.py``);
* the generator's loss is ``feature_matching_loss``: the mean absolute difference between the mean
  intermediate features of the discriminator on data and on generated points;
* the supervised-only baseline is the same network trained on ``supervised_loss`` alone, as
  ``python -m ssgan.train --supervised-only`` trains the image classifier.

The networks (``models.py``) are the MNIST model's multilayer perceptrons at toy size: Gaussian noise on
the discriminator's input and hidden layers, a K-way output. ``data.py`` makes the problems,
``training.py`` trains both models step for step, ``picture.py`` draws them, ``cli.py`` is the command
line.
"""
from .cli import build_parser, main
from .data import PROBLEMS, Problem, make_problem
from .training import Config, Result, accuracies, accuracy, train

__all__ = ["main", "build_parser", "Config", "Result", "train", "accuracies", "accuracy", "make_problem",
           "Problem", "PROBLEMS"]
