"""The Record tab: read prompted phrases, record or upload clips, and watch the dataset grow.

Every control is visible from the first paint with English phrases already shown, so a user can start recording
without first choosing a language. Clips are saved straight into the workspace dataset training reads.
"""

from __future__ import annotations

import random
from typing import Any

import gradio as gr

from voxplug.app import consent, recording
from voxplug.app import phrases as phrase_source
from voxplug.app.tabs import TabHandle, error_text, status_box, table
from voxplug.app.tabs.privacy import consent_box
from voxplug.app.ui import PRIVATE, AppContext, Session, workspace_of
from voxplug.errors import VoxplugError

DEFAULT_DATASET = "my-voice"
PHRASE_HEADERS = ["#", "phrase", "saved"]


def prompt_line(phrases: list[str], index: int) -> str:
    """``Phrase 3 of 10``, or a hint when there are no prompts."""
    if not phrases:
        return "**No prompts for this language**: type what you say in the transcript box, then record."
    return (
        f"**Phrase {index + 1} of {len(phrases)}**: read it aloud, record, then save "
        "(edit the text if you said something else)."
    )


def phrase_rows(phrases: list[str], saved: list[int]) -> list[list[Any]]:
    """The phrase list with a ✓ on those already saved."""
    return [[number + 1, text, "✓" if number in saved else ""] for number, text in enumerate(phrases)]


class RecordTab:
    """Builds the Record tab and holds its event handlers."""

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx

    # -- layout ---------------------------------------------------------------------------------------------

    def build(self) -> TabHandle:
        """Lay the tab out and wire its events."""
        first = phrase_source.phrase_batch(phrase_source.DEFAULT_LANGUAGE, seed=0)
        with gr.Tab("1 · Record", id="record", elem_id="tab-record") as tab:
            with gr.Row():
                self.language = gr.Dropdown(
                    phrase_source.language_choices(),
                    value=phrase_source.DEFAULT_LANGUAGE,
                    label="Language",
                    elem_id="language",
                )
                self.dataset = gr.Dropdown(
                    [DEFAULT_DATASET],
                    value=DEFAULT_DATASET,
                    allow_custom_value=True,
                    label="Dataset (pick one, or type a new name)",
                    elem_id="dataset-name",
                )
            self.agreed = consent_box(self.ctx.settings.root)
            self.phrases = gr.State(first)
            self.seed = gr.State(0)
            self.index = gr.State(0)
            self.saved = gr.State([])
            self._recorder(first)
            self._uploader()
            self._dataset_view()
        self._wire()
        return TabHandle(self.refresh, self.refresh_outputs).wire(tab, self.ctx.session)

    def _recorder(self, first: list[str]) -> None:
        with gr.Row(equal_height=False):
            with gr.Column(scale=3):
                gr.Markdown("### Read aloud")
                self.prompt = gr.Markdown(prompt_line(first, 0), elem_id="phrase-counter")
                self.transcript = gr.Textbox(
                    value=first[0] if first else "", label="Transcript", lines=2, elem_id="transcript"
                )
                self.audio = gr.Audio(
                    sources=["microphone", "upload"], type="filepath", label="Your recording", elem_id="recorder"
                )
                with gr.Row():
                    self.previous_button = gr.Button("◀ Previous", elem_id="previous-phrase")
                    self.next_button = gr.Button("Skip ▶", elem_id="next-phrase")
                    self.more_button = gr.Button("More phrases", elem_id="more-phrases")
                    self.save_button = gr.Button("Save clip", variant="primary", elem_id="save-clip")
                self.save_status = status_box("save-status")
            with gr.Column(scale=2):
                self.phrase_table = gr.Dataframe(
                    table(phrase_rows(first, []), PHRASE_HEADERS),
                    interactive=False,
                    label="Phrases (click one to read it)",
                    max_height=360,
                    wrap=True,
                    elem_id="phrase-list",
                )

    def _uploader(self) -> None:
        with gr.Accordion("Upload audio files instead", open=True):
            with gr.Row():
                self.files = gr.File(
                    file_count="multiple", type="filepath", label="Audio files", elem_id="upload-files"
                )
                self.file_transcripts = gr.Textbox(
                    lines=5,
                    label="Transcripts: one line per file, in the same order",
                    elem_id="upload-transcripts",
                )
            self.upload_button = gr.Button("Save uploads to the dataset", elem_id="save-uploads")
            self.upload_status = status_box("upload-status")

    def _dataset_view(self) -> None:
        gr.Markdown("### Your dataset")
        self.summary = status_box("dataset-summary")
        self.rows = gr.Dataframe(
            table([], recording.TABLE_HEADERS),
            interactive=False,
            label="Clips (click a row to play, edit or delete it)",
            max_height=420,
            wrap=True,
            elem_id="dataset-table",
        )
        self.selected = gr.State(None)
        with gr.Row(equal_height=False):
            self.player = gr.Audio(type="numpy", interactive=False, label="Selected clip", elem_id="row-player")
            with gr.Column():
                self.row_text = gr.Textbox(label="Selected clip's transcript", lines=2, elem_id="row-text")
                with gr.Row():
                    self.save_text_button = gr.Button("Save transcript", elem_id="save-row-text")
                    self.delete_button = gr.Button("Delete clip", variant="stop", elem_id="delete-row")
                    self.check_button = gr.Button("Check the whole dataset", elem_id="check-dataset")
        self.row_status = status_box("row-status")

    @property
    def refresh_outputs(self) -> list[Any]:
        """What :meth:`refresh` updates."""
        return [self.dataset, self.summary, self.rows]

    @property
    def _prompt_outputs(self) -> list[Any]:
        return [self.phrases, self.seed, self.index, self.saved, self.prompt, self.transcript, self.phrase_table]

    def _wire(self) -> None:
        session = self.ctx.session
        events = [
            (self.language.change, self.change_language, [self.language], self._prompt_outputs),
            (self.dataset.change, self.show_dataset, [session, self.dataset], [self.summary, self.rows]),
            (self.next_button.click, self.step_forward, [self.phrases, self.index, self.saved], self._step_outputs),
            (self.previous_button.click, self.step_back, [self.phrases, self.index, self.saved], self._step_outputs),
            (self.phrase_table.select, self.pick_phrase, [self.phrases, self.saved], self._step_outputs),
            (
                self.more_button.click,
                self.more_phrases,
                [self.language, self.phrases, self.seed, self.index, self.saved],
                self._prompt_outputs,
            ),
            (
                self.save_button.click,
                self.save_recording,
                [
                    session,
                    self.dataset,
                    self.language,
                    self.audio,
                    self.transcript,
                    self.phrases,
                    self.index,
                    self.saved,
                    self.agreed,
                ],
                [self.save_status, self.audio, *self._step_outputs, *self.refresh_outputs],
            ),
            (
                self.upload_button.click,
                self.save_uploads,
                [session, self.dataset, self.language, self.files, self.file_transcripts, self.agreed],
                [self.upload_status, self.files, self.file_transcripts, *self.refresh_outputs],
            ),
            (self.rows.select, self.select_row, [session, self.dataset], [self.selected, self.player, self.row_text]),
            (
                self.save_text_button.click,
                self.save_row_text,
                [session, self.dataset, self.selected, self.row_text],
                [self.row_status, self.summary, self.rows],
            ),
            (
                self.delete_button.click,
                self.delete_selected,
                [session, self.dataset, self.selected],
                [self.row_status, self.selected, self.player, self.row_text, self.summary, self.rows],
            ),
            (self.check_button.click, self.check, [session, self.dataset], [self.row_status]),
        ]
        for listener, handler, inputs, outputs in events:
            listener(handler, inputs, outputs, api_visibility=PRIVATE)

    @property
    def _step_outputs(self) -> list[Any]:
        return [self.index, self.saved, self.prompt, self.transcript, self.phrase_table]

    # -- dataset views --------------------------------------------------------------------------------------

    def refresh(self, session: Session) -> list[Any]:
        """The dataset choices (keeping the chosen one), its summary and its rows."""
        workspace = workspace_of(session)
        names = workspace.dataset_names()
        return [gr.update(choices=sorted({*names, DEFAULT_DATASET})), *self.show_dataset(session, None)]

    def show_dataset(self, session: Session, dataset: str | None) -> list[Any]:
        """Summary and rows of ``dataset`` (the first existing one when None)."""
        workspace = workspace_of(session)
        if dataset is None:
            names = workspace.dataset_names()
            dataset = names[0] if names else DEFAULT_DATASET
        return [
            f"{recording.summary_markdown(workspace, dataset)}\n\n{consent.consent_line(workspace, dataset)}",
            table(recording.rows_table(workspace, dataset), recording.TABLE_HEADERS),
        ]

    # -- prompts --------------------------------------------------------------------------------------------

    def change_language(self, language: str) -> list[Any]:
        """New prompts in ``language``, starting from the first."""
        seed = random.randrange(1_000_000)
        phrases = self._batch(language, seed=seed, skip=0)
        return [phrases, seed, *self._show_phrase(phrases, 0, [])]

    def _batch(self, language: str, *, seed: int, skip: int) -> list[str]:
        return phrase_source.phrase_batch(language, seed=seed, skip=skip, online=self.ctx.settings.online_phrases)

    def more_phrases(self, language: str, phrases: list[str], seed: int, index: int, saved: list[int]) -> list[Any]:
        """Add :data:`~voxplug.app.phrases.BATCH_SIZE` prompts and jump to the first new one."""
        extra = self._batch(language, seed=seed, skip=len(phrases))
        extended = [*phrases, *extra]
        return [extended, seed, *self._show_phrase(extended, len(phrases) if extra else index, saved)]

    def step_forward(self, phrases: list[str], index: int, saved: list[int]) -> list[Any]:
        """Show the next prompt."""
        return self._show_phrase(phrases, min(index + 1, max(len(phrases) - 1, 0)), saved)

    def step_back(self, phrases: list[str], index: int, saved: list[int]) -> list[Any]:
        """Show the previous prompt."""
        return self._show_phrase(phrases, max(index - 1, 0), saved)

    def pick_phrase(self, phrases: list[str], saved: list[int], evt: gr.SelectData = None) -> list[Any]:
        """Show the prompt clicked in the phrase list."""
        row = evt.index[0] if evt is not None and evt.index else 0
        return self._show_phrase(phrases, int(row), saved)

    @staticmethod
    def _show_phrase(phrases: list[str], index: int, saved: list[int]) -> list[Any]:
        text = phrases[index] if phrases else ""
        return [index, saved, prompt_line(phrases, index), text, table(phrase_rows(phrases, saved), PHRASE_HEADERS)]

    # -- saving ---------------------------------------------------------------------------------------------

    def save_recording(
        self,
        session: Session,
        dataset: str,
        language: str,
        audio: str | None,
        text: str,
        phrases: list[str],
        index: int,
        saved: list[int],
        agreed: bool = False,
    ) -> list[Any]:
        """Save the recording with its transcript; on success clear the recorder and move to the next prompt.

        A dataset's first clip needs the consent box ticked (see :mod:`voxplug.app.consent`).
        """
        try:
            workspace = workspace_of(session)
        except VoxplugError as exc:
            return [error_text(exc), gr.skip(), *[gr.skip()] * 5, *[gr.skip()] * 3]
        refusal = self._without_consent(session, dataset, language, agreed) if audio else None
        if refusal:
            return [refusal, gr.skip(), *[gr.skip()] * 5, *[gr.skip()] * 3]
        report = recording.save_clip(workspace, dataset, audio, text, language=language, label="the recording")
        if not report.ok:
            return [report.markdown(), gr.skip(), *[gr.skip()] * 5, *self.refresh(session)]
        saved = sorted({*saved, index}) if phrases else saved
        following = (
            self.step_forward(phrases, index, saved)
            if index + 1 < len(phrases)
            else self._show_phrase(phrases, index, saved)
        )
        return [report.markdown(), None, *following, *self._refresh_keeping(session, dataset)]

    def save_uploads(
        self,
        session: Session,
        dataset: str,
        language: str,
        files: list[str] | None,
        transcripts: str,
        agreed: bool = False,
    ) -> list[Any]:
        """Save uploaded files with their transcript lines; the inputs are cleared only when all went in."""
        workspace = workspace_of(session)
        refusal = self._without_consent(session, dataset, language, agreed) if files else None
        if refusal:
            return [refusal, *[gr.skip()] * 5]
        report = recording.save_uploads(workspace, dataset, files, transcripts, language=language)
        cleared = [None, ""] if report.ok else [gr.skip(), gr.skip()]
        return [report.markdown(), *cleared, *self._refresh_keeping(session, dataset)]

    @staticmethod
    def _without_consent(session: Session, dataset: str, language: str, agreed: bool) -> str | None:
        """The refusal message when ``dataset`` has no consent on file and the box is not ticked; else None."""
        workspace = workspace_of(session)
        who = consent.who_agreed(workspace, session.username)
        return consent.ensure_consent(workspace, dataset, agreed=agreed, who=who, language=language or None)

    def _refresh_keeping(self, session: Session, dataset: str) -> list[Any]:
        workspace = workspace_of(session)
        choices = sorted({*workspace.dataset_names(), DEFAULT_DATASET, dataset})
        return [gr.update(choices=choices, value=dataset), *self.show_dataset(session, dataset)]

    # -- rows -----------------------------------------------------------------------------------------------

    def select_row(self, session: Session, dataset: str, evt: gr.SelectData = None) -> list[Any]:
        """Load the clicked row into the player and the edit box."""
        row_id = _row_id(evt)
        path, text = recording.row_audio(workspace_of(session), dataset, row_id)
        return [row_id, _read_clip(path), text]

    def save_row_text(self, session: Session, dataset: str, row_id: str | None, text: str) -> list[Any]:
        """Replace the selected row's transcript."""
        workspace = workspace_of(session)
        message = recording.edit_row_text(workspace, dataset, row_id, text)
        return [message, *self.show_dataset(session, dataset)]

    def delete_selected(self, session: Session, dataset: str, row_id: str | None) -> list[Any]:
        """Delete the selected row."""
        message = recording.delete_row(workspace_of(session), dataset, row_id)
        return [message, None, None, "", *self.show_dataset(session, dataset)]

    def check(self, session: Session, dataset: str) -> str:
        """Validate the whole dataset and list what is wrong."""
        try:
            return recording.check_dataset(workspace_of(session), dataset)
        except VoxplugError as exc:
            return error_text(exc)


def _row_id(evt: Any) -> str | None:
    values = getattr(evt, "row_value", None)
    if not values or len(values) < 2:
        return None
    return str(values[1])


def _read_clip(path: str | None) -> tuple[int, Any] | None:
    """A stored clip as ``(rate, int16 samples)`` for the player (the file itself is never served by path)."""
    if path is None:
        return None
    import soundfile as sf

    samples, rate = sf.read(path, dtype="int16")
    return rate, samples


def build(ctx: AppContext) -> TabHandle:
    """Lay out the Record tab."""
    return RecordTab(ctx).build()
