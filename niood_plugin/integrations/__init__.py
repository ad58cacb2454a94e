"""Adapters to other OOD suites, each imported only when its library is installed.

* :mod:`niood_plugin.integrations.openood`: OpenOOD (``Evaluator(postprocessor=...)`` with
  :class:`UEPostprocessor`, and a trainer in OpenOOD's ``train_epoch`` shape that fills the
  garbage class with :class:`~niood_plugin.GarbageSampler`);
* :mod:`niood_plugin.integrations.torch_uncertainty`: torch-uncertainty (UE as a
  ``TUOODCriterion`` for ``ClassificationRoutine(eval_ood=True, ood_criterion=...)``);
* :mod:`niood_plugin.integrations.convert`: the conversions both use (no third-party import).

pytorch-ood needs no adapter: :class:`~niood_plugin.UEDetector` is a pytorch-ood detector and
:mod:`niood_plugin.suites` are pytorch-ood benchmarks.
"""
