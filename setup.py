from setuptools import find_packages, setup

setup(
    name="vadstream",
    version="0.1.0",
    description=("Real-time video anomaly detection: MXNet Gluon models of normal footage (a "
                 "ConvLSTM next-frame predictor by default; image models for parts on a "
                 "conveyor) score camera streams live and publish alerts over ZeroMQ, a "
                 "dashboard and MQTT"),
    python_requires=">=3.11,<3.12",
    packages=find_packages(include=["models", "models.*", "stream", "stream.*",
                                    "train", "train.*"]),
    package_data={"models": ["weights/*.params", "weights/*.json", "weights/*.calib"],
                  "stream.dashboard": ["static/*"]},
    install_requires=[
        "mxnet==1.9.1",
        "numpy>=1.23,<1.24",          # MXNet 1.9.1 still uses np.bool
        "opencv-python-headless>=4.8,<4.12",
        "scipy>=1.10,<1.16",
        "pyzmq>=25",
        "pillow>=10",
        "PyYAML>=6",
        "tqdm>=4.60",
        "scikit-learn>=1.3,<1.8",
        "matplotlib>=3.7,<3.10",
        "aiohttp>=3.9,<4",             # vadstream serve: HTTP, WebSocket
        "prometheus-client>=0.17",     # vadstream serve: /metrics exposition
        "paho-mqtt>=2.0,<3",           # vadstream mqtt: the MQTT bridge (CallbackAPIVersion 2)
        # vadstream export (MXNet's mx2onnx reads onnx.mapping, removed in onnx 1.19; run
        # here with 1.17) and the detector's onnxruntime backend; both with numpy<1.24
        "onnx>=1.15,<1.18",
        "onnxruntime>=1.19,<1.33",
        # onnxruntime.quantization (precision int8 on backend onnxruntime) imports it; 0.5
        # and later need numpy 2
        "ml_dtypes>=0.4,<0.5",
        "av>=18.1,<19",                # H.264 MP4 (event clips, record): its wheels bundle libx264
    ],
    extras_require={"test": ["pytest>=8", "pytest-timeout>=2.1", "hypothesis>=6", "ruff>=0.5",
                             # drives Debian's chromium (never `playwright install`)
                             "playwright>=1.40,<1.66",
                             "ray[default]==2.40.0"],   # tests/stream/test_cluster.py
                    # vadstream on a Ray cluster (stream/cluster); resolves with numpy<1.24
                    "cluster": ["ray[default]==2.40.0"]},
    entry_points={"console_scripts": ["vadstream=stream.apps.cli:main"]},
)
