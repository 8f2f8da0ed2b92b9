"""AddSpeaker: one more speaker of the same frames (its faces and generated faces) for BlendAndAssemble."""

from __future__ import annotations

from musetalk_core.types import FACES_TYPE, GENERATED_TYPE, SPEAKERS_TYPE

CATEGORY = "MuseTalk"


class AddSpeaker:
    DESCRIPTION = ("Several people talking, each with their own audio: run one FaceDetectAndParse per person (its "
                   "speaker_selection names the face: 'track 1', 'point X Y'...), one WhisperAudioEncode per audio "
                   "and one generation node per person, then chain an AddSpeaker per further person into "
                   "BlendAndAssemble's more_speakers. Every face is pasted into the same frames and the audio tracks "
                   "are mixed; faces of no speaker stay as they are.")
    CATEGORY = CATEGORY
    FUNCTION = "add"
    RETURN_TYPES = (SPEAKERS_TYPE,)
    RETURN_NAMES = ("more_speakers",)
    OUTPUT_TOOLTIPS = ("The speakers so far, for BlendAndAssemble's more_speakers or another AddSpeaker.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "faces": (FACES_TYPE, {"tooltip": "This speaker's faces: FaceDetectAndParse with its "
                                       "speaker_selection, on the same frames as the other speakers'."}),
                "generated": (GENERATED_TYPE, {"tooltip": "This speaker's generated faces (MuseTalkUNetInpaint or "
                                               "LatentSyncInpaint driven by its own audio)."}),
            },
            "optional": {
                "more_speakers": (SPEAKERS_TYPE, {"tooltip": "Speakers added before this one (pasted first)."}),
            },
        }

    def add(self, faces, generated, more_speakers=None):
        from musetalk_core.errors import InputError
        from musetalk_core.types import MuseTalkFaces, MuseTalkGenerated

        if not isinstance(faces, MuseTalkFaces) or not isinstance(generated, MuseTalkGenerated):
            raise InputError("AddSpeaker: connect 'faces' from FaceDetectAndParse and 'generated' from "
                             "MuseTalkUNetInpaint or LatentSyncInpaint.")
        return (tuple(more_speakers or ()) + ((faces, generated),),)
