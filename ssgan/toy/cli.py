"""The command line of ``python -m ssgan.toy``: parse, train, print both accuracies, write the picture."""
from __future__ import annotations

import argparse
import math
import os
import sys

from .data import PROBLEMS, num_classes
from .training import Config

DEFAULTS = Config()


class _Parser(argparse.ArgumentParser):
    """argparse, with every problem reported as one line ``error: ...`` and exit status 2."""

    def error(self, message):
        self.exit(2, f"error: {message}\n")


def _int_at_least(low):
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {value}")
        return value
    return parse


def _float(positive):
    def parse(text):
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not math.isfinite(value) or value < 0 or (positive and value == 0):
            raise argparse.ArgumentTypeError(f"must be a finite number {'> 0' if positive else '>= 0'}, "
                                             f"got {text}")
        return value
    return parse


def build_parser() -> argparse.ArgumentParser:
    d = DEFAULTS
    p = _Parser(prog="python -m ssgan.toy",
                description="Semi-supervised learning with a GAN on a 2-D toy problem: trains the "
                            "supervised-only classifier and the semi-supervised GAN on the same few labels, "
                            "prints both test accuracies and draws their decision regions side by side.",
                epilog="exit status: 0 done, 2 bad options")
    p.add_argument("--problem", choices=PROBLEMS, default=d.problem,
                   help="the data: two interlocking moons (2 classes) or a 5-arm pinwheel (5 classes) "
                        f"(default {d.problem})")
    p.add_argument("--labels", type=_int_at_least(1), default=d.labels, metavar="N",
                   help=f"labeled points per class, drawn from the unlabeled pool (default {d.labels})")
    p.add_argument("--unlabeled", type=_int_at_least(1), default=d.unlabeled, metavar="N",
                   help=f"points in the unlabeled pool, balanced over the classes (default {d.unlabeled})")
    p.add_argument("--test", type=_int_at_least(1), default=d.test, metavar="N",
                   help=f"held-out test points, from the same distribution (default {d.test})")
    p.add_argument("--steps", type=_int_at_least(1), default=d.steps, metavar="N",
                   help=f"training steps; each updates the baseline, the discriminator and the generator "
                        f"once (default {d.steps})")
    p.add_argument("--batch", type=_int_at_least(1), default=d.batch, metavar="N",
                   help=f"unlabeled and generated points per step (default {d.batch})")
    p.add_argument("--lr", type=_float(True), default=d.lr, metavar="X",
                   help=f"Adam's learning rate for all three networks (default {d.lr})")
    p.add_argument("--unlabeled-weight", type=_float(False), default=d.unlabeled_weight, metavar="X",
                   help="weight of the unlabeled (real/fake) terms in the discriminator's loss; 0 leaves "
                        f"only the labeled term (default {d.unlabeled_weight})")
    p.add_argument("--seed", type=_int_at_least(0), default=d.seed, metavar="N",
                   help=f"seeds the data, the labeled subset, the weights and all noise (default {d.seed})")
    p.add_argument("--out", default="toy.png", metavar="PATH",
                   help="where to write the PNG picture (default toy.png)")
    p.add_argument("--gif", default=None, metavar="PATH",
                   help="also write an animated GIF of the training to PATH (off by default)")
    p.add_argument("--gif-every", type=_int_at_least(1), default=100, metavar="N",
                   help="steps between two frames of the GIF (default 100)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def _check_writable(parser, option, path):
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        parser.error(f"{option} {path}: the folder {folder} does not exist")
    if os.path.isdir(path):
        parser.error(f"{option} {path}: is a folder")


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    k = num_classes(args.problem)
    if args.labels > args.unlabeled // k:
        parser.error(f"--labels {args.labels}: more than the {args.unlabeled // k} points of each class in "
                     f"the pool (--unlabeled {args.unlabeled}, {k} classes)")
    _check_writable(parser, "--out", args.out)
    if args.gif:
        _check_writable(parser, "--gif", args.gif)
    config = Config(problem=args.problem, labels=args.labels, unlabeled=args.unlabeled, test=args.test,
                    steps=args.steps, batch=args.batch, lr=args.lr, unlabeled_weight=args.unlabeled_weight,
                    seed=args.seed)

    from . import picture          # matplotlib is imported only once the options are good
    from .training import train

    recorder = picture.GifRecorder() if args.gif else None
    result = train(config, progress=not args.no_progress, frame_every=args.gif_every if recorder else 0,
                   on_frame=recorder)
    n_lab = len(result.problem.y_labeled)
    print(f"supervised only:     {100 * result.supervised_accuracy:5.1f}% test accuracy "
          f"({n_lab} labeled points)")
    print(f"semi-supervised GAN: {100 * result.semi_supervised_accuracy:5.1f}% test accuracy "
          f"({n_lab} labeled + {args.unlabeled} unlabeled points)")
    picture.save_png(result, args.out)
    if recorder:
        recorder.save(args.gif)
    wrote = args.out + (f" and {args.gif}" if recorder else "")
    print(f"wrote {wrote} ({result.seconds:.1f} s)")
    sys.stdout.flush()
    return 0
