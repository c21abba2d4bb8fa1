"""Chat prompts rendered by archreg (tokenize --chat) against llama.cpp's
llama_chat_apply_template: every family archreg renders, by name and recognised from a Jinja
template, must give byte-identical prompts; an unrecognised template is refused naming the
options."""

from __future__ import annotations

import ctypes
import json
import subprocess

import pytest

from binaries import archreg, require_llama_cpp
from test_tokenizer import smollm2_path

RENDERED = ["chatml", "llama2", "llama2-sys", "llama2-sys-bos", "llama2-sys-strip", "mistral-v1", "mistral-v3",
            "mistral-v3-tekken", "mistral-v7", "mistral-v7-tekken", "phi3", "phi4", "falcon3", "zephyr", "gemma", "deepseek3",
            "llama3", "llama4", "smolvlm", "gpt-oss", "solar-open"]

CONVERSATIONS = {
    "full": [("system", "You are a helpful assistant."), ("user", "Hello"), ("assistant", "Hi there! How can I help?"),
             ("user", "Tell me a joke.")],
    "user-only": [("user", "What is 2+2?")],
    "padded": [("system", "  Be brief.\n"), ("user", "\tWhy is the sky blue? "), ("assistant", " Rayleigh scattering.  "),
               ("user", "Thanks\n\n")],
    "unicode": [("user", "日本語で答えて 😀"), ("assistant", "はい！"), ("user", "ありがとう")],
}

# Jinja fragments carrying the markers llama.cpp looks for, and the family it picks.
JINJA = {
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}": "chatml",
    "{{ '<|start_header_id|>' + m.role + '<|end_header_id|>\n\n' }}{{ '<|eot_id|>' }}": "llama3",
    "{{ '<start_of_turn>' + role + '\n' + content | trim + '<end_of_turn>\n' }}": "gemma",
    "{{'<｜User｜>' + content}}{{'<｜Assistant｜>' + content + '<｜end▁of▁sentence｜>'}}": "deepseek3",
    "{{ '[SYSTEM_PROMPT]' + system + '[/SYSTEM_PROMPT]' }}{{ '[INST]' + content + '[/INST]' }}": "mistral-v7",
    "{{ '<|start|>' + role + '<|channel|>' + '<|message|>' }}": "gpt-oss",
    "{{ bos_token }}{% for m in messages %}{{ '[INST] ' + m.content + ' [/INST]' }}{% endfor %}": "llama2",
    "{{ '<<SYS>>\n' }}{{ '[INST] ' + content.strip() + ' [/INST]' }}": "llama2-sys-strip",
}


def llama_cpp_render(template: str, messages, add_ass: bool) -> str | None:
    require_llama_cpp()
    import llama_cpp

    array = (llama_cpp.llama_chat_message * len(messages))()
    keep = []
    for i, (role, content) in enumerate(messages):
        role_b, content_b = role.encode(), content.encode()
        keep += [role_b, content_b]
        array[i].role = role_b
        array[i].content = content_b
    size = 1 << 16
    buf = ctypes.create_string_buffer(size)
    n = llama_cpp.llama_chat_apply_template(template.encode(), array, len(messages), add_ass, buf, size)
    return None if n < 0 else buf.raw[:n].decode()


def archreg_render(messages, add_ass: bool, tmp_path, name: str | None = None, jinja: str | None = None):
    request = tmp_path / "chat.json"
    request.write_text(json.dumps({"messages": [{"role": r, "content": c} for r, c in messages], "add_generation_prompt": add_ass}))
    command = [archreg(), "tokenize", str(smollm2_path()), "--chat", str(request), "--json"]
    if name is not None:
        command += ["--chat-template", name]
    if jinja is not None:
        (tmp_path / "template.jinja").write_text(jinja)
        command += ["--chat-template-file", str(tmp_path / "template.jinja")]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=120)
    return proc


@pytest.mark.parametrize("conversation", sorted(CONVERSATIONS))
@pytest.mark.parametrize("name", RENDERED)
@pytest.mark.parametrize("add_ass", [True, False], ids=["open", "closed"])
def test_each_family_renders_as_llama_cpp(name, conversation, add_ass, tmp_path):
    messages = CONVERSATIONS[conversation]
    proc = archreg_render(messages, add_ass, tmp_path, name=name)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["template"] == name
    assert result["prompt"] == llama_cpp_render(name, messages, add_ass)


@pytest.mark.parametrize("jinja", list(JINJA), ids=list(JINJA.values()))
def test_jinja_templates_are_recognised_as_llama_cpp_recognises_them(jinja, tmp_path):
    messages = CONVERSATIONS["full"]
    proc = archreg_render(messages, True, tmp_path, jinja=jinja)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["template"] == JINJA[jinja]
    assert result["prompt"] == llama_cpp_render(jinja, messages, True)


def test_the_models_own_template_renders_as_llama_cpp(tmp_path):
    from gguf import GGUFReader

    field = GGUFReader(smollm2_path()).fields["tokenizer.chat_template"]
    jinja = bytes(field.parts[field.data[0]]).decode()
    proc = archreg_render(CONVERSATIONS["full"], True, tmp_path)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["template"] == "chatml"
    assert result["prompt"] == llama_cpp_render(jinja, CONVERSATIONS["full"], True)


def test_an_unrecognised_template_is_refused_naming_the_options(tmp_path):
    jinja = "{% for m in messages %}{{ m.content }}{% endfor %}"
    assert llama_cpp_render(jinja, CONVERSATIONS["full"], True) is None
    proc = archreg_render(CONVERSATIONS["full"], True, tmp_path, jinja=jinja)
    assert proc.returncode == 2
    assert "not one llama.cpp recognises" in proc.stderr and "chatml" in proc.stderr and "'raw'" in proc.stderr
    proc = archreg_render(CONVERSATIONS["full"], True, tmp_path, name="no-such-template")
    assert proc.returncode == 2 and "unknown chat template 'no-such-template'" in proc.stderr
    for name in RENDERED:
        assert name in proc.stderr


def test_raw_mode_sends_the_contents_as_they_are(tmp_path):
    proc = archreg_render([("user", "Once upon a time")], True, tmp_path, name="raw")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["prompt"] == "Once upon a time"
