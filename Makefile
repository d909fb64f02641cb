# Two commands a newcomer needs: `make demo` and `make test`. Both create .venv when it is missing.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.dermis-installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: install editors demo test bench fuzz clean

install: $(STAMP)

# torch first, pinned: both wheels lie on local disk here (CUDA builds that run on the CPU). An open
# range on a bare venv would fetch whatever is newest. The project's own range accepts 2.11-2.14.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install --quiet -e '.[dev,cluster]'
	touch $(STAMP)

demo: install
	$(VENV)/bin/dermis upscale examples/portrait_astronaut_512.png -o out/demo/portrait_lite_2x.png \
		--preset lite --scale 2 --seed 7 --compare out/demo/before_after.png
	@echo "Result: out/demo/portrait_lite_2x.png   Before/after: out/demo/before_after.png"

# Real Krita and a GIMP 3 chroot for the editor tests (apt + debootstrap; sudo when not root).
editors:
	@for s in tools/setup.d/*.sh; do [ -e "$$s" ] || continue; echo "== $$s"; bash "$$s" || exit 1; done

# The parity tests run twice more with another float32 summation order: the portable kernels
# instead of this CPU's vector ones, and one thread. A bound that only one CPU meets fails here.
# Then the type checker over pipeline/, daemon/ and proto/ ([tool.pyright] in pyproject.toml).
test: install editors
	$(PY) -m pytest
	ATEN_CPU_CAPABILITY=default $(PY) -m pytest -q -m parity -p no:cacheprovider
	DERMIS_TEST_THREADS=1 $(PY) -m pytest -q -m parity -p no:cacheprovider
	$(PY) -m pyright

bench: install
	$(PY) bench/bench_lite.py

# Coverage-guided fuzzing of what reads untrusted bytes (tests/fuzz/): FUZZ_S seconds per target.
# Not part of `make test`; a crash it finds becomes a regression test in the normal suite.
FUZZ_S ?= 60
fuzz: install
	$(PY) -m pip install --quiet -e '.[fuzz]'
	$(PY) tests/fuzz/run_all.py --seconds $(FUZZ_S)

clean:
	rm -rf out .pytest_cache
