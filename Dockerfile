# kosmos_ros for a CUDA robot: ROS 2 base image + the CUDA build of torch +
# this workspace. Needs the NVIDIA driver on the host and the NVIDIA Container
# Toolkit to run:
#
#   docker build -t kosmos_ros --build-arg ROS_DISTRO=humble .   # or jazzy, lyrical
#   docker run --rm --gpus all --network host kosmos_ros \
#     ros2 launch kosmos_ros kosmos.launch.py image_topics:="['/front/image_raw']"
#
# PyPI's torch wheels for x86_64 Linux bundle CUDA (about 3 GB). Jetson
# (aarch64): start from NVIDIA's l4t images instead; PyPI torch has no CUDA
# there (see the README's Install section).
ARG ROS_DISTRO=humble
FROM ros:${ROS_DISTRO}-ros-base

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3-venv python3-pip \
       python3-colcon-common-extensions \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /ws
COPY kosmos_ros_interfaces src/kosmos_ros/kosmos_ros_interfaces
COPY kosmos_ros src/kosmos_ros/kosmos_ros
COPY kosmos_bt src/kosmos_ros/kosmos_bt

COPY constraints src/kosmos_ros/constraints

# ROS dependencies from package.xml (it names no pip key: see below).
# hadolint ignore=DL3008
RUN apt-get update \
    && rosdep update --rosdistro "${ROS_DISTRO}" \
    && rosdep install --from-paths src --ignore-src -y \
       --rosdistro "${ROS_DISTRO}" \
    && rm -rf /var/lib/apt/lists/*

# The model stack in a venv on ROS's interpreter that sees ROS's packages,
# kept out of colcon's way, at the versions tested for that distribution and
# its Python: constraints/ros-<distro>-py3.X.txt (numpy 1.x on Humble and
# Jazzy, >= 2.3.4 on Lyrical, as their extensions were built). OpenCV is
# ROS's python3-opencv. The distribution -> Python table below is checked
# against the locks and the GitHub workflow by test_dependencies.py.
RUN case "${ROS_DISTRO}" in \
      humble) py=3.10 ;; \
      jazzy) py=3.12 ;; \
      lyrical) py=3.14 ;; \
      *) echo "no install set for ROS ${ROS_DISTRO}"; exit 1 ;; \
    esac \
    && test "$(/usr/bin/python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')" = "${py}" \
    && /usr/bin/python3 -m venv --system-site-packages /opt/kosmos-venv \
    && /opt/kosmos-venv/bin/pip install --no-cache-dir \
       -c "src/kosmos_ros/constraints/ros-${ROS_DISTRO}-py${py}.txt" \
       torch transformers huggingface_hub accelerate safetensors tokenizers \
       pillow numpy \
    && touch /opt/kosmos-venv/COLCON_IGNORE
ENV PATH=/opt/kosmos-venv/bin:${PATH}

RUN . "/opt/ros/${ROS_DISTRO}/setup.bash" \
    && python -m colcon build --cmake-args -DPYTHON_EXECUTABLE=/usr/bin/python3 \
    && rm -rf build log \
    && printf '#!/bin/bash\nset -e\nsource "/opt/ros/%s/setup.bash"\nsource /ws/install/setup.bash\nexec "$@"\n' \
       "${ROS_DISTRO}" > /kosmos_entrypoint.sh \
    && chmod +x /kosmos_entrypoint.sh

ENTRYPOINT ["/kosmos_entrypoint.sh"]
CMD ["ros2", "launch", "kosmos_ros", "kosmos.launch.py"]
