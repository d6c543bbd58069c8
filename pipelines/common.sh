# Shared settings of the pipelines/*.sh scripts (sourced, not run).
# MODEL / MMPROJ: the LLM and vision projector GGUFs (default: the tiny
# random test models, which give nonsense answers but exercise every step).
# GST_PLUGIN_PATH: where libgstmustdrop.so is (default: ../build-gst/gst).
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
fixtures="$root/models/fixtures/vision"
MODEL="${MODEL:-$fixtures/tiny-llava-llm-f32.gguf}"
MMPROJ="${MMPROJ:-$fixtures/tiny-llava-mmproj-f32.gguf}"
QUESTION="${QUESTION:-What is happening in the video?}"
export GST_PLUGIN_PATH="${GST_PLUGIN_PATH:-$root/build-gst/gst}"
if ! gst-inspect-1.0 mustdropvqa >/dev/null 2>&1; then
  echo "mustdropvqa not found in GST_PLUGIN_PATH=$GST_PLUGIN_PATH (build with: meson setup build-gst && ninja -C build-gst)" >&2
  exit 1
fi
