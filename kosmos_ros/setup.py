# Copyright 2026 The kosmos_ros Authors
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.

"""Install kosmos_ros with colcon (ament_python) or with pip."""

from glob import glob
import os

from setuptools import find_packages, setup

package_name = 'kosmos_ros'

setup(
    name=package_name,
    version='0.1.0',
    packages=find_packages(exclude=['test']),
    # gemv.c: compiled on the user's machine at first use (cpu_gemv.py).
    package_data={'kosmos_ros.model': ['gemv.c']},
    data_files=[
        ('share/ament_index/resource_index/packages',
            ['resource/' + package_name]),
        ('share/' + package_name, ['package.xml']),
        (os.path.join('share', package_name, 'launch'),
            glob('launch/*.launch.py')),
        (os.path.join('share', package_name, 'config'), glob('config/*.yaml')),
        (os.path.join('share', package_name, 'rviz'), glob('rviz/*.rviz')),
        (os.path.join('share', package_name, 'security'),
            glob('security/*.xml')),
    ],
    # Only setuptools is required, so colcon builds in a plain ROS
    # environment; the model stack comes with the extras (pip). The policy
    # (README, "Dependencies"): every lower bound is one the matrix ran
    # (constraints/lowest.txt holds them, tools/matrix.sh runs them); an upper
    # bound only for a known break; the exact tested sets are locked in
    # constraints/.
    install_requires=['setuptools'],
    extras_require={
        'model': [
            # 2.13: the compiled decoder's CUDA-graph trees, thread-safe.
            'torch>=2.13',
            # 5.0: the Kosmos-2 and cache API decoding.py calls.
            'transformers>=5.0',
            'huggingface_hub>=1.3',  # loading.py's hub probe; transformers 5.0's floor
            'accelerate>=1.2',  # 1.1 lacks what transformers 5.0 imports
            'safetensors>=0.4.3',  # transformers 5.0's floor
            'tokenizers>=0.22.1',  # 0.22.0 caps huggingface_hub below 1.0
            'pillow>=10.0',
            'numpy>=1.23.5',
            'opencv-python-headless>=4.8.1.78',
        ],
        # 0.50.2: the one run here (CPU int8 and NF4 included); from 0.50 the
        # 4-bit inference matmul is a custom op torch.compile takes whole.
        'quantization': ['bitsandbytes>=0.50.2'],
        'test': [
            'pytest', 'py_trees', 'hypothesis', 'vermin',
            'bitsandbytes>=0.50.2',  # test_precision runs int8 and NF4
        ],
        # Apart from `test`: beside a ROS whose Debian/Ubuntu packages
        # already bring flake8 and its plugins (what ament_flake8 runs), a
        # second copy of a plugin in the venv registers its options twice
        # and flake8 stops (tools/test.sh then installs only `test`).
        'lint': [
            'flake8', 'pydocstyle', 'flake8-blind-except', 'flake8-builtins',
            'flake8-class-newline', 'flake8-comprehensions',
            'flake8-deprecated', 'flake8-docstrings', 'flake8-import-order',
            'flake8-quotes',
        ],
    },
    python_requires='>=3.10',
    zip_safe=True,
    maintainer='kosmos_ros maintainers',
    maintainer_email='kosmos-ros@example.com',
    description='Grounded vision-language perception for ROS 2 with Kosmos-2',
    license='Apache-2.0',
    entry_points={
        'console_scripts': [
            'kosmos_node = kosmos_ros.ros.main:main',
            'kosmos-ros = kosmos_ros.cli.main:main',
        ],
    },
)
