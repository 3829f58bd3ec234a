// Copyright 2026 The kosmos_ros Authors
//
// Licensed under the Apache License, Version 2.0 (the "License");
// you may not use this file except in compliance with the License.
// You may obtain a copy of the License at
//
//     http://www.apache.org/licenses/LICENSE-2.0
//
// Unless required by applicable law or agreed to in writing, software
// distributed under the License is distributed on an "AS IS" BASIS,
// WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
// See the License for the specific language governing permissions and
// limitations under the License.

#include <string>
#include <vector>

#include "kosmos_bt/nodes.hpp"

namespace kosmos_bt
{

KosmosAsk::KosmosAsk(const std::string & name, const BT::NodeConfig & config)
: GoalNode(name, config, "/kosmos/ask") {}

BT::PortsList KosmosAsk::providedPorts()
{
  auto ports = goalPorts("/kosmos/ask");
  ports.insert(
  {
    BT::InputPort<std::string>(
      "question", "The question, e.g. \"What is this object?\"."),
    BT::InputPort<vision_msgs::msg::Detection2D>(
      "detection", "Ask about this detection's box (e.g. KosmosLocate's "
      "output); optional."),
    BT::InputPort<std::vector<double>>(
      "box", "Or about this box, \"x1;y1;x2;y2\" in source pixels; neither: "
      "the whole image."),
    BT::InputPort<unsigned>(
      "max_new_tokens", 0, "Most tokens of the answer; 0 = the node's "
      "answer_max_new_tokens."),
    BT::OutputPort<std::string>("answer", "The answer, markup removed."),
    BT::OutputPort<std::string>(
      "partial_answer", "The answer so far, while it is generated."),
    BT::OutputPort<vision_msgs::msg::Detection2DArray>(
      "detections", "The phrases grounded in the answer, with boxes."),
  });
  return ports;
}

std::string KosmosAsk::makeGoal(Goal & goal)
{
  auto question = getInput<std::string>("question");
  if (!question || question.value().empty()) {
    return "the question port is empty";
  }
  goal.question = question.value();
  goal.max_new_tokens = getInput<unsigned>("max_new_tokens").value_or(0);
  const auto & given = config().input_ports;
  if (given.count("detection")) {
    auto detection = getInput<vision_msgs::msg::Detection2D>("detection");
    if (!detection) {
      return "no detection to ask about: " + detection.error();
    }
    const auto & box = detection.value().bbox;
    goal.x1 = box.center.position.x - box.size_x / 2.0;
    goal.y1 = box.center.position.y - box.size_y / 2.0;
    goal.x2 = box.center.position.x + box.size_x / 2.0;
    goal.y2 = box.center.position.y + box.size_y / 2.0;
  } else if (given.count("box")) {
    auto box = getInput<std::vector<double>>("box");
    if (!box || box.value().size() != 4) {
      return "box must be \"x1;y1;x2;y2\"";
    }
    goal.x1 = box.value()[0];
    goal.y1 = box.value()[1];
    goal.x2 = box.value()[2];
    goal.y2 = box.value()[3];
  }
  return "";
}

void KosmosAsk::onFeedback(const Feedback & feedback)
{
  setOutput("partial_answer", feedback.answer);
}

BT::NodeStatus KosmosAsk::onResult(const Result & result)
{
  setOutput("answer", result.answer);
  setOutput("detections", result.detections);
  return BT::NodeStatus::SUCCESS;
}

}  // namespace kosmos_bt
