"""Multi-stage pipelines: several trainings in order, each stage a config (or a diff on one), later
stages reading earlier stages' checkpoints through references such as ``{teacher.best}``.

    pipeline = load_pipeline('configs/pipelines/cifar100_resnet56_resnet20_kd.py', synthetic=True)
    results = PipelineRunner(pipeline, synthetic=True, max_iters=2).run()

``tools/pipeline.py`` is the command line. See :mod:`densekd.pipelines.spec` for the file format.
"""
from densekd.pipelines.report import StageResult, write_report
from densekd.pipelines.runner import PipelineRunner
from densekd.pipelines.spec import Pipeline, PipelineError, Stage, load_pipeline
from densekd.pipelines.state import stage_state

__all__ = ["Pipeline", "PipelineError", "PipelineRunner", "Stage", "StageResult", "load_pipeline", "stage_state",
           "write_report"]
