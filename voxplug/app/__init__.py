"""The voxplug web app (``voxplug app``): record, build a dataset, train, evaluate, publish and deploy in a browser.

The modules split the app by job, so that everything but :mod:`voxplug.app.ui` and :mod:`voxplug.app.tabs` works
(and is tested) without gradio:

* :mod:`voxplug.app.workspace`: a folder per user or browser, holding datasets, runs, configs and job records;
* :mod:`voxplug.app.recording`: saving clips into a workspace dataset, the rows table, edits and deletes;
* :mod:`voxplug.app.phrases`: prompts to read aloud, from the phrases plugin;
* :mod:`voxplug.app.jobs`: the background job runner (subprocesses, one accelerator job at a time, cancel);
* :mod:`voxplug.app.progress`: training progress and curves parsed from a run's output;
* :mod:`voxplug.app.train_form`: the Train tab's fields turned into a run config YAML;
* :mod:`voxplug.app.comparison`: base versus fine-tuned WER/CER, utterance by utterance;
* :mod:`voxplug.app.tokens`: the one place a Hugging Face token is looked up, kept and redacted, and what
  environment a job gets;
* :mod:`voxplug.app.markdown_text`: user text inside the page's Markdown, shown as typed;
* :mod:`voxplug.app.ui` and :mod:`voxplug.app.tabs`: the gradio page itself.

Gradio is imported only inside the UI modules, so ``voxplug --help`` stays fast.
"""

from __future__ import annotations
