import langchain_clip_multimodal

EXPECTED_ALL = [
    "CLIPChroma",
    "CLIPEmbeddings",
    "CLIPImageRetriever",
    "TextImageRetriever",
    "__version__",
    "cosine_relevance",
    "create_image_search_tool",
    "documents_to_image_blocks",
    "image_message",
]


def test_all_imports() -> None:
    assert sorted(langchain_clip_multimodal.__all__) == sorted(EXPECTED_ALL)
    for name in EXPECTED_ALL:
        assert getattr(langchain_clip_multimodal, name) is not None


def test_import_does_not_load_torch() -> None:
    import subprocess
    import sys

    code = "import sys, langchain_clip_multimodal; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
